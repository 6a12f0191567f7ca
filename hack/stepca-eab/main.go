// Command stepca-eab prepares a stopped step-ca for ACME external account binding (EAB): it makes
// sure the database holds an ACME provisioner of the given name that requires EAB, stores new EAB
// keys for it, and prints each key as one line of JSON: {"keyID": "...", "hmacKey": "<base64url>"}.
//
// Why a program of its own: open-source step-ca verifies EAB against keys in its database, but its
// admin API for creating them answers "only available in Certificate Manager", so `step ca acme eab
// add` cannot make one. This calls the functions that API and step-ca's provisioner migration call
// (authority.ProvisionerToLinkedca, the admin database's CreateProvisioner, the ACME database's
// CreateExternalAccountKey) on the same database, so provisioner and keys are exactly what step-ca
// reads. It needs a database with provisioners (`step ca init --remote-management`), whose
// provisioners have IDs that keys can be stored under. The database admits one process at a time:
// run this before step-ca starts.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/smallstep/certificates/acme/db/nosql"
	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/admin"
	adminnosql "github.com/smallstep/certificates/authority/admin/db/nosql"
	"github.com/smallstep/certificates/authority/provisioner"
	"github.com/smallstep/linkedca"
	stepnosql "github.com/smallstep/nosql"
)

func main() {
	dbType := flag.String("db-type", "badgerv2", "the database type, as in ca.json's db.type")
	dataSource := flag.String("data-source", "", "the database, as in ca.json's db.dataSource")
	name := flag.String("provisioner", "", "name of the ACME provisioner that requires EAB")
	count := flag.Int("count", 1, "how many keys to create")
	flag.Parse()
	if *dataSource == "" || *name == "" {
		fail(fmt.Errorf("-data-source and -provisioner are required"))
	}
	if err := run(*dbType, *dataSource, *name, *count); err != nil {
		fail(err)
	}
}

func run(dbType, dataSource, name string, count int) error {
	ctx := context.Background()
	db, err := stepnosql.New(dbType, dataSource)
	if err != nil {
		return fmt.Errorf("opening %s database %s: %w", dbType, dataSource, err)
	}
	defer db.Close()
	id, err := eabProvisioner(ctx, db, name)
	if err != nil {
		return err
	}
	acmeDB, err := nosql.New(db)
	if err != nil {
		return err
	}
	for range count {
		// No reference: step-ca keeps references unique per provisioner, and nothing here
		// looks keys up by one.
		key, err := acmeDB.CreateExternalAccountKey(ctx, id, "")
		if err != nil {
			return err
		}
		line, err := json.Marshal(map[string]string{
			"keyID":   key.ID,
			"hmacKey": base64.RawURLEncoding.EncodeToString(key.HmacKey),
		})
		if err != nil {
			return err
		}
		fmt.Println(string(line))
	}
	return nil
}

// eabProvisioner returns the ID of the ACME provisioner called name, creating it (requiring EAB)
// when the database has none of that name.
func eabProvisioner(ctx context.Context, db stepnosql.DB, name string) (string, error) {
	adminDB, err := adminnosql.New(db, admin.DefaultAuthorityID)
	if err != nil {
		return "", err
	}
	provs, err := adminDB.GetProvisioners(ctx)
	if err != nil {
		return "", err
	}
	for _, p := range provs {
		if p.GetName() != name {
			continue
		}
		if p.GetType() != linkedca.Provisioner_ACME || !p.GetDetails().GetACME().GetRequireEab() {
			return "", fmt.Errorf("provisioner %q exists but is not an ACME provisioner requiring EAB", name)
		}
		return p.GetId(), nil
	}
	// The conversion step-ca applies when it moves ca.json provisioners into the database.
	p, err := authority.ProvisionerToLinkedca(&provisioner.ACME{
		Type: "ACME", Name: name, RequireEAB: true,
	})
	if err != nil {
		return "", err
	}
	if err := adminDB.CreateProvisioner(ctx, p); err != nil {
		return "", err
	}
	return p.GetId(), nil
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "stepca-eab: %v\n", err)
	os.Exit(1)
}

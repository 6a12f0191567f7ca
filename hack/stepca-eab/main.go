// Command stepca-eab stores an ACME external account binding (EAB) key in a stopped step-ca's
// database and prints it as JSON: {"keyID": "...", "hmacKey": "<unpadded base64url>"}.
//
// Open-source step-ca verifies EAB against keys in its database, but its admin API for creating
// them answers "only available in Certificate Manager", so `step ca acme eab add` cannot make
// one. This program calls the very function that API would call (acme/db/nosql
// CreateExternalAccountKey) on the same database, so the key is exactly what step-ca expects.
// The database allows one process at a time: run it before step-ca starts.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	acmenosql "github.com/smallstep/certificates/acme/db/nosql"
	"github.com/smallstep/nosql"
)

func main() {
	dbType := flag.String("db-type", "bbolt", "the database type, as in ca.json's db.type")
	dataSource := flag.String("data-source", "", "the database, as in ca.json's db.dataSource")
	// Provisioners read from ca.json (not from a managed database) have the empty ID, and the
	// key is looked up by the provisioner's ID.
	provisionerID := flag.String("provisioner-id", "", "ID of the ACME provisioner the key is for")
	reference := flag.String("reference", "", "optional reference (an external system's name)")
	flag.Parse()
	if *dataSource == "" {
		fail(fmt.Errorf("-data-source is required"))
	}
	db, err := nosql.New(*dbType, *dataSource)
	if err != nil {
		fail(fmt.Errorf("opening %s database %s: %w", *dbType, *dataSource, err))
	}
	defer db.Close()
	acmeDB, err := acmenosql.New(db)
	if err != nil {
		fail(err)
	}
	key, err := acmeDB.CreateExternalAccountKey(context.Background(), *provisionerID, *reference)
	if err != nil {
		fail(err)
	}
	out, err := json.Marshal(map[string]string{
		"keyID":   key.ID,
		"hmacKey": base64.RawURLEncoding.EncodeToString(key.HmacKey),
	})
	if err != nil {
		fail(err)
	}
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "stepca-eab: %v\n", err)
	os.Exit(1)
}

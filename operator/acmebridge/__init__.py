"""acmebridge: ACME automation for an organisation's own PKI on Kubernetes."""

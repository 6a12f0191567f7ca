module acmebridge.io/lab-pause

go 1.26.0

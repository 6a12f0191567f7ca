"""The lab: real kube-apiserver, etcd and Pebble on loopback, and the tests that need it."""

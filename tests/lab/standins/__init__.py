"""Test-only stand-ins for the parts of a cluster that would run containers.

The lab has a real kube-apiserver, etcd and kube-controller-manager but no container runtime, so
two small programs play kubelet and an ingress controller: ``node_agent`` runs solver Pods' own
command lines as local processes on loopback addresses and reports them through the API, and
``ingress`` routes the ACME server's validation requests by the real Ingress objects. Neither is
part of acmebridge; everything the operator reads and writes still goes through the API server.
"""

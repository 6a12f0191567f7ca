# The lab: a real etcd, kube-apiserver, kube-controller-manager, Pebble and pebble-challtestsrv on
# 127.0.0.1, plus the node agent and ingress stand-ins. docs/lab.md says what it is and why.
.PHONY: lab-bin lab-bind9 lab-up lab-down lab-status

# `down` and `status` need only the standard library, so they also run where the venv is missing
# (`make clean` in a fresh clone, CI cleaning up after a failed install).
LABCTL = $$([ -x $(PY) ] && echo $(PY) || echo $(PYTHON)) -m tests.lab.labctl

lab-bin: ## build the lab's pinned binaries into .lab/bin (cached per machine)
	@hack/build-lab-bin.sh

lab-bind9: ## install BIND 9 (Debian's bind9) when missing: the lab's DNS-01 server
	@hack/install-bind9.sh

lab-up: venv lab-bin lab-bind9 ## start the lab, or reuse the running one; settings in .lab/env
	@$(PY) -m tests.lab.labctl up
	@if [ "$(NODE)" = 1 ]; then $(MAKE) --no-print-directory node-up NODE=; fi

lab-down: ## stop the lab and remove its state (keeps .lab/bin and the last run's logs)
	@$(LABCTL) down

lab-status: ## show the lab's processes, their health and its settings
	@$(LABCTL) status

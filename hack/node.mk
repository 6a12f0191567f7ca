# The lab's real node (tests/lab/labnode.py, docs/lab.md "The real node") and the operator's
# image built without Docker (hack/image/build.sh). `make lab-up NODE=1` is `make lab-up node-up`.
.PHONY: node-packages node-up node-down node-status image

IMAGE_ARCHIVE := dist/acmebridge-image.tar

node-packages: ## install the Debian packages the real node needs, when missing (containerd, runc, CNI, iptables)
	@hack/node/packages.sh node

node-up: venv lab-bin node-packages ## add the real node to the lab (starting the lab if needed); loads dist/'s image
	@$(PY) -m tests.lab.labctl up
	@$(PY) -m tests.lab.labctl node-up
	@if [ -f $(IMAGE_ARCHIVE) ]; then $(PY) -m tests.lab.labnode load-image $(IMAGE_ARCHIVE); fi

node-down: ## stop the real node and restore the host; the rest of the lab keeps running
	@$(LABCTL) node-down

node-status: ## the real node's processes and whether it is Ready
	@$(LABCTL) node-status

image: ## build the operator's image without Docker into dist/ (OCI archive); loads it into the node
	@hack/image/build.sh

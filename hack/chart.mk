# The Helm chart (helm/acmebridge). Its CRDs are copies of crds/, the single source of truth;
# tests/chart checks that they are byte-identical. helm itself is one of the lab's pinned
# binaries (hack/build-lab-bin.sh), so `make lab-bin` provides .lab/bin/helm.
.PHONY: sync-chart-crds chart-lint chart-test

CHART := helm/acmebridge
HELM := .lab/bin/helm

sync-chart-crds: ## copy crds/*.yaml into the chart (run after editing a CRD)
	@rm -f $(CHART)/crds/*.yaml
	@cp crds/*.yaml $(CHART)/crds/
	@echo ">> $(CHART)/crds/ now matches crds/"

chart-lint: lab-bin ## helm lint the chart with its default values
	$(HELM) lint --strict $(CHART)

chart-test: venv lab-bin ## the chart's tests: render and lint (no lab), then the lab tests
	hack/pytest.sh tests/chart

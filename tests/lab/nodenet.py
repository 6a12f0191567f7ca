"""The lab's real node's network: its bridge, pod range and the host's address on the bridge.

Constants only, so that the lab's certificates (labfiles) can name the bridge address without
importing the node's machinery. The range is 10.244.1.0/24 so it never collides with
10.244.0.0/24, the addresses the node-agent stand-in reports for its loopback processes.
"""

from __future__ import annotations

NODE_NAME = "lab-kubelet"
BRIDGE = "acmelab0"
POD_CIDR = "10.244.1.0/24"
# The host's address on the bridge: the Pods' gateway, and where the lab's servers answer Pods
# (through the node's relay, tests/lab/labrelay.py).
BRIDGE_ADDRESS = "10.244.1.1"
BRIDGE_PREFIX_LENGTH = 24

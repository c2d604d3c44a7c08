"""The oduflow policy pack: `pulumi preview --policy-pack policies --policy-pack-config policy-config.json`.

Every rule lives in `oduflow_iac.policy`, shared with the offline plan; this file only hands them to
the engine. Constructing the PolicyPack starts the analyzer and blocks until the engine is done.
"""

import sys
from pathlib import Path

# The pack's own virtualenv holds only pulumi-policy. The rules import nothing beyond the standard
# library and the SDK's pure modules, so the repository root (this folder's parent) goes on the path
# instead of installing the SDK with all its providers into the pack.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack

from oduflow_iac import policy

PolicyPack(name=policy.PACK_NAME, policies=policy.POLICIES)

# verify stage: see the issue; filled in by its owner.

"""The analysis steps: critical periods, jumps and their types, stabilisation, the checkpoint plan and the
mechanisms at it, and the replication table."""

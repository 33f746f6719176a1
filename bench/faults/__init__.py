"""The fault suite: a load of sign-ups and purchases on the real stack in separate processes,
while the worker is killed, the Temporal dev server restarted, the database cut off and the
providers fail; afterwards every customer's ledger is checked against what the simulation
predicts for their events (`cyklo faults`, `python -m bench.faults`, `scripts/faults`)."""

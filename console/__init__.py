"""Running a command for a person: what reaches them when it fails (`cyklo`, `python worker.py`,
`python -m bench`)."""

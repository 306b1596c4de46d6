"""The rules module: pure, typed functions from a policy's resolved rules and the facts to dates
with explanations (DESIGN §5). No I/O, no database."""

.PHONY: run test lint migrate openapi bench
run:
	scripts/serve
test:
	scripts/test
lint:
	.venv/bin/ruff check . && .venv/bin/mypy
migrate:
	.venv/bin/alembic upgrade head
openapi:
	.venv/bin/python -m app openapi > openapi.json
bench:
	.venv/bin/python bench/rules.py

"""Local runtime: embedded ClickHouse (chdb) and in-process AWS (moto) for tests, demo and simulate.

Never imported by a Lambda handler; it needs the dev extras (chdb, moto).
"""

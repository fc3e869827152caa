"""Polls from the client side: organisers, trustees, voters and the universal verifier.

Everything here talks to nodes over JSON-RPC (web3.py) and checks what it can
itself; the rules are in docs/spec/polls.md and docs/spec/ballots.md.
"""

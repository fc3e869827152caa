"""Budgets as vouchers: the VoucherBook from a client's side (docs/spec/vouchers.md).

:mod:`chain` wraps the contract; :mod:`authorization` makes and checks the
holder's payment authorisations for the till; :mod:`books` recomputes a
fund's books from chain data alone; :mod:`scheduler` pays due mandates.
"""

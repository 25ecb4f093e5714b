"""Analyses of the networks: parameters and multiply-adds, Table 1, layer responses, the paper's figures."""

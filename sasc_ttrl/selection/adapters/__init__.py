"""Model adapters of the selection methods: the forward pass that fills in a candidate's token features, the Yes/No
judge, and the reward-model verifier. They run models (torch / transformers); the scorers in ``selection/`` do not.
"""

"""The real-alert studies: the pool loaders (``ztf_pool``), the routes trained on it
(``pool_realbogus``, ``pool_alertclass``), held-out figures (``heldout``) and the drivers that
produced the shipped realbogus and alertclass weights (``realbogus_study``, ``alertclass_study``,
``realbogus_report``). They use :mod:`engines.training` (the ``train`` / ``evaluate`` library).
"""

"""Training, evaluation and the synthetic training sets (see README.md in this folder).

Modules: ``datasets`` (users' labelled data), ``splits`` (grouped splits), ``synth_realbogus``,
``synth_wise``, ``synth_hst`` (generators), ``adapters`` (raw arrays -> the service's
preprocessing), ``train`` (the loop), ``evaluate`` (figures, plots, reports), ``agreement``
(our score vs a survey's own), ``recipes`` (what the commands run), ``ztf_files`` (real ZTF
alerts for bases and checks).
"""

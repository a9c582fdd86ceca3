"""The Rubin real/bogus study: the seed real/bogus network trained on real Rubin alerts and on
injections into their science/template pairs, held out by date, field and source.

Modules: :mod:`.alerts` (which real alert is in which split), :mod:`.injections` (labelled
triplets on real Rubin sky), :mod:`.dataset` (network inputs through the serving
preprocessing), :mod:`.study` (variants, training, held-out figures), :mod:`.ship` (card and
weights). Report: ``research/rubin_realbogus/README.md``.
"""

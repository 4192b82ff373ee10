"""Past one machine: shards of a run (``shards``: the partition and the recorded durations; ``shard_plugin``: the
pytest side), Hypothesis' example database shared between machines (``database``), the stable test ids both key by
(``ids``), and the profile of a fuzzing round (``fuzz_round``; the command is ``conformance.fuzz``)."""

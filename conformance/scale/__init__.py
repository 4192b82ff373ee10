"""Past one machine: shards of a run (``shards``), Hypothesis' example database shared between machines
(``database``), and the stable test ids both key by (``ids``)."""

//! Semantic tests of the tree against ZooKeeper 3.9 behaviour.

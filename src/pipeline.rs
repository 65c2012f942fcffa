//! The processing pipeline: spooled message -> parse + classify -> events log ->
//! metrics -> advice hand-off -> mark processed.

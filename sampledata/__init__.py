"""Sample data generators: the demo dataset (``python -m sampledata.demo``) and the labelled face
sets of the tests and benchmarks. Not a stage of the job: no pipeline or transform imports it."""

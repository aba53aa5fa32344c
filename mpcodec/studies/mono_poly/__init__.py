"""The mono->poly study: experiment (make_train, run), analysis from checkpoints, report."""

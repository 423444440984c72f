"""Code the tests share that is not itself a test: servers, marks, launched workers, checks."""

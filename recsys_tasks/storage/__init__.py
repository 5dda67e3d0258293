"""Storage: the artifact store (local folder or S3), the one layout of its keys, the model
registry under `models/`, and the retention that prunes what no kept run needs."""

"""Checks of the deployment files: the Dockerfile, docker-compose.yml, k8s/, alert rules."""

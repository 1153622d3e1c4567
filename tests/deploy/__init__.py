"""Checks of the deployment files: Dockerfiles, docker-compose.yml, k8s/, alert rules."""

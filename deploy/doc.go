// Package deploy holds the tests of taskrunner's Docker deployment: the
// docker-compose.yml, docker-compose.ports.yml, Dockerfile, .dockerignore and
// .env.example at the repository's root, where docker compose and docker
// build find them. No Docker engine runs on the development machines, so
// the compose files are loaded with compose-go, the loader Docker Compose
// itself uses, and checked for its production shape.
package deploy

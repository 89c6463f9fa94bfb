#!/bin/sh
# The container's entrypoint: `serve` (the default) migrates first, once, then becomes the
# server (exec: it gets the container's SIGTERM itself); any other tomchat command runs as is,
# e.g. `docker compose run tomchat-a rooms`.
set -eu
if [ "$#" -eq 0 ]; then
  set -- serve
fi
if [ "$1" = "serve" ]; then
  tomchat db upgrade
fi
exec tomchat "$@"

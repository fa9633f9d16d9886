#!/bin/sh
# As the official image's entrypoint: flags alone run redis-server with them; any other command
# runs as given. Protected mode goes first so a caller's own --protected-mode still wins.
set -e
case "$1" in
  -*) set -- redis-server "$@" ;;
esac
if [ "$1" = redis-server ]; then
  shift
  set -- redis-server --protected-mode no "$@"
fi
exec "$@"

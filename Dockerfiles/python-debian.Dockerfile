# Python base image built from Debian packages only (bookworm: Python 3.11, trixie: 3.13), for machines that reach no container registry.
# `dsenv base bootstrap` makes it in two steps:
#   1. debootstrap --variant=minbase bookworm ROOTFS http://deb.debian.org/debian
#      tar -C ROOTFS -c . | docker import - dsenv/debian:bookworm
#   2. docker build -t dsenv/python:3.11-bookworm --build-arg DEBIAN_IMAGE=dsenv/debian:bookworm -f Dockerfiles/python-debian.Dockerfile Dockerfiles/
# The result plays the part of python:3.11-slim: python3 with venv support, CA certificates, nothing cached.
ARG DEBIAN_IMAGE=dsenv/debian:bookworm
FROM ${DEBIAN_IMAGE}
ENV LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && ln -s /usr/bin/python3 /usr/local/bin/python
CMD ["python3"]

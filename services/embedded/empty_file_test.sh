#!/bin/bash
# Passes when the file named by $1 is empty; otherwise prints it and fails.
if [[ -s "$1" ]]; then
  echo "expected nothing, found:"
  cat "$1"
  exit 1
fi

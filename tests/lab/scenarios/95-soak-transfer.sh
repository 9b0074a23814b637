#!/usr/bin/env bash
# Soak (quick): 20 MB each way pw1 and tcp, 5 MB v012, over 5 % loss, 5 % reordering,
# 1 % duplication: byte-exact (sha256), RSS flat. The long run: tests/soak transfer.
exec "$(dirname "$0")/../../soak" --quick transfer

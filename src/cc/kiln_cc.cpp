// kiln-cc: the compile cache's compiler wrapper (see cc/wrapper.h).
#include <openssl/crypto.h>

#include <cstdio>
#include <cstring>

#include "cc/launcher.h"
#include "cc/probe.h"
#include "cc/wrapper.h"

int main(int argc, char** argv) {
  // Only sha256 is used: reading openssl.cnf (the image's) and registering
  // every cipher and digest would cost 1 ms per compile (0.2 ms without).
  OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_ADD_ALL_CIPHERS | OPENSSL_INIT_NO_ADD_ALL_DIGESTS,
                      nullptr);
  // The init of an action sandbox (worker/action_box.h).
  if (argc == 3 && strcmp(argv[1], "--kiln-launcher") == 0) return kiln::cc::RunLauncher(argv[2]);
  // The init of the worker's health probe: a container ran it (worker/health.h).
  if (argc == 2 && strcmp(argv[1], "--kiln-probe") == 0) {
    std::puts(kiln::cc::kKilnProbeAnswer);
    return 0;
  }
  return kiln::cc::RunWrapper(argc, argv);
}

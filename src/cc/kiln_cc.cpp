// kiln-cc: the compile cache's compiler wrapper (see cc/wrapper.h).
#include <openssl/crypto.h>

#include "cc/wrapper.h"

int main(int argc, char** argv) {
  // Only sha256 is used: reading openssl.cnf would cost milliseconds per compile.
  OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG, nullptr);
  return kiln::cc::RunWrapper(argc, argv);
}

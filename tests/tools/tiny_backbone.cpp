// Writes the tiny test backbone (4 conv+BN blocks, 32×32 input) to argv[1]: tests get a real
// TorchScript backbone in milliseconds without Python.
#include <iostream>

#include "tltrain/core/error.h"
#include "tltrain/model/backbone.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: tltrain_tiny_backbone OUT.pt [SEED]\n";
    return 2;
  }
  try {
    tltrain::model::write_tiny_backbone(argv[1], argc > 2 ? std::stoull(argv[2]) : 0);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

# -DLT_SANITIZE=ON: AddressSanitizer + UndefinedBehaviorSanitizer on every target.
if(LT_SANITIZE)
  set(LT_SAN_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined
      -fno-omit-frame-pointer)
  add_compile_options(${LT_SAN_FLAGS})
  add_link_options(${LT_SAN_FLAGS})
endif()

# -DLT_FUZZ=ON: coverage instrumentation, ASan and UBSan for every target, so
# the fuzzers see the library's branches and its memory errors and undefined
# behaviour (not only the harness's); UBSan findings abort like ASan's. The
# fuzz binaries add -fsanitize=fuzzer at link (tests/CMakeLists.txt).
if(LT_FUZZ)
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined)
endif()

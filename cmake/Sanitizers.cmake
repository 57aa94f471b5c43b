# -DLT_SANITIZE=ON: AddressSanitizer + UndefinedBehaviorSanitizer on every target.
if(LT_SANITIZE)
  set(LT_SAN_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined
      -fno-omit-frame-pointer)
  add_compile_options(${LT_SAN_FLAGS})
  add_link_options(${LT_SAN_FLAGS})
endif()

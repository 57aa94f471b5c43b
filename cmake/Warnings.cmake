# Warnings as one module (after curl's CMake/PickyWarnings.cmake): every target
# that calls lt_warnings() builds with these, and any warning fails the build.
set(LT_WARNING_FLAGS
  -Wall -Wextra -Werror
  -Wformat=2 -Wshadow -Wpointer-arith -Wstrict-prototypes -Wmissing-prototypes
  -Wvla -Wundef -Wcast-align -Wwrite-strings -Wnull-dereference
  -Wno-unused-parameter)
function(lt_warnings target)
  target_compile_options(${target} PRIVATE ${LT_WARNING_FLAGS})
endfunction()

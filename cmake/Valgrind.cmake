# -DLT_VALGRIND=ON (make test-valgrind, docs/sanitizers.md): every test and
# every program a test starts runs under valgrind memcheck.
#   - each program (worker/, scheduler/, parser/, watcher/, tools/) is built
#     into valgrind-real/<dir>/ and its usual path (e.g. worker/lattice-worker)
#     is a script that execs tests/valgrind/vg on it, so the shell tests, the C
#     tests that spawn a program and the crash campaign need no switch of
#     their own (exec: the pid a test holds is the program's);
#   - each ctest test runs through tests/valgrind/run-test (tests/CMakeLists.txt),
#     which fails it when a program it started reported a memcheck error.
# No sanitizer flags (valgrind and ASan exclude each other); -O1 -g.
if(LT_VALGRIND)
  if(LT_SANITIZE OR LT_FUZZ)
    message(FATAL_ERROR "LT_VALGRIND excludes LT_SANITIZE and LT_FUZZ")
  endif()
  find_program(LT_VALGRIND_EXE valgrind REQUIRED)
  set(LT_VALGRIND_VG ${CMAKE_CURRENT_SOURCE_DIR}/tests/valgrind/vg)
  set(LT_VALGRIND_RUN ${CMAKE_CURRENT_SOURCE_DIR}/tests/valgrind/run-test)
endif()

# lt_valgrind_wrap_programs(DIR...): the wrapping above, for every executable
# target defined in each DIR (relative to the top source directory).
function(lt_valgrind_wrap_programs)
  if(NOT LT_VALGRIND)
    return()
  endif()
  foreach(dir ${ARGN})
    get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
    foreach(t ${targets})
      get_target_property(type ${t} TYPE)
      if(NOT type STREQUAL "EXECUTABLE")
        continue()
      endif()
      set(rel ${dir})
      set(real ${CMAKE_BINARY_DIR}/valgrind-real/${rel})
      set_target_properties(${t} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${real})
      file(CONFIGURE OUTPUT ${CMAKE_BINARY_DIR}/${rel}/${t}
           CONTENT "#!/bin/sh\n# ${t} under valgrind memcheck (-DLT_VALGRIND=ON, cmake/Valgrind.cmake)\nexec '${LT_VALGRIND_VG}' '${real}/${t}' \"$@\"\n")
      file(CHMOD ${CMAKE_BINARY_DIR}/${rel}/${t}
           PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                       WORLD_READ WORLD_EXECUTE)
    endforeach()
  endforeach()
endfunction()

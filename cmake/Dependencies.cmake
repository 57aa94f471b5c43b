# Libraries through pkg-config, minimum versions pinned (Debian bookworm has these).
find_package(PkgConfig REQUIRED)
pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET rdkafka>=2.0.2)
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl>=7.88.0)
pkg_check_modules(OPENSSL REQUIRED IMPORTED_TARGET openssl>=3.0)
pkg_check_modules(PQ REQUIRED IMPORTED_TARGET libpq>=15)
pkg_check_modules(JSONC REQUIRED IMPORTED_TARGET json-c>=0.16)
pkg_check_modules(GMIME REQUIRED IMPORTED_TARGET gmime-3.0>=3.2.13)
pkg_check_modules(AVRO REQUIRED IMPORTED_TARGET avro-c>=1.11)
pkg_check_modules(MHD REQUIRED IMPORTED_TARGET libmicrohttpd>=0.9.75)
find_package(Threads REQUIRED)

add_library(lt_deps INTERFACE)
target_link_libraries(lt_deps INTERFACE
  PkgConfig::RDKAFKA PkgConfig::CURL PkgConfig::OPENSSL PkgConfig::PQ
  PkgConfig::JSONC PkgConfig::GMIME PkgConfig::AVRO PkgConfig::MHD
  Threads::Threads m)
add_library(lt::deps ALIAS lt_deps)

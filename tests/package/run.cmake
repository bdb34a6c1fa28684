# Builds and runs the consumer project in tests/package against ardent, in one of these ways:
#   MODE=find_package      install ardent to a temporary prefix, then find_package(ardent) from it
#                          (and find_package(ardent COMPONENTS distributed), (... deploy): two more
#                          programs)
#   MODE=add_subdirectory  the consumer adds ardent's source tree with add_subdirectory
#   MODE=without_gloo      find_package as above, but the consumer is configured and built where
#                          Gloo's headers and CMake package are hidden (a mount namespace with empty
#                          directories over them: a machine without libgloo-dev). Needs root;
#                          prints SKIP otherwise.
cmake_minimum_required(VERSION 3.21)

set(work ${WORK_DIR}/${MODE})
file(REMOVE_RECURSE ${work})
file(MAKE_DIRECTORY ${work})

function(run_step description)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${description} failed (${result}):\n${output}")
  endif()
  message(STATUS "${description}: ok")
  set(last_output "${output}" PARENT_SCOPE)
endfunction()

set(common -DCMAKE_BUILD_TYPE=Release)
if(Torch_DIR_FOR_TEST)
  list(APPEND common -DTorch_DIR=${Torch_DIR_FOR_TEST})
endif()

# The consumer's commands: as they are, or (without_gloo) inside a mount namespace that hides Gloo.
set(hide "")
set(gloo TRUE)
if(MODE STREQUAL "without_gloo")
  set(gloo FALSE)
  set(hidden /usr/include/gloo /usr/share/cmake/Gloo)
  set(mounts "")
  foreach(dir IN LISTS hidden)
    string(APPEND mounts "mount -t tmpfs none ${dir} && ")
  endforeach()
  execute_process(COMMAND unshare --mount sh -c "${mounts} test ! -e /usr/include/gloo/config.h"
    RESULT_VARIABLE cannot_hide OUTPUT_QUIET ERROR_QUIET)
  if(NOT cannot_hide EQUAL 0)
    message("SKIP: cannot hide Gloo in a mount namespace here (needs root and unshare)")
    return()
  endif()
  set(hide unshare --mount sh -c "${mounts} exec \"$@\"" sh)
endif()

if(MODE STREQUAL "find_package" OR MODE STREQUAL "without_gloo")
  set(prefix ${work}/prefix)
  run_step("configure ardent" ${CMAKE_COMMAND} -S ${ARDENT_SOURCE_DIR} -B ${work}/ardent-build ${common}
    -DARDENT_BUILD_TESTS=OFF -DARDENT_BUILD_EXAMPLES=OFF -DARDENT_BUILD_TOOLS=OFF -DARDENT_BUILD_BENCHMARKS=OFF -DCMAKE_INSTALL_PREFIX=${prefix})
  run_step("install ardent" ${CMAKE_COMMAND} --install ${work}/ardent-build)
  # The installed package must be relocatable: move the prefix before using it.
  file(RENAME ${prefix} ${work}/moved-prefix)
  run_step("configure consumer" ${hide} ${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${work}/consumer-build ${common}
    "-DCMAKE_PREFIX_PATH=${work}/moved-prefix;${CMAKE_PREFIX_PATH_FOR_TEST}" -DCONSUMER_MODE=find_package
    -DCONSUMER_GLOO=${gloo})
elseif(MODE STREQUAL "add_subdirectory")
  run_step("configure consumer" ${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${work}/consumer-build ${common}
    "-DCMAKE_PREFIX_PATH=${CMAKE_PREFIX_PATH_FOR_TEST}" -DCONSUMER_MODE=add_subdirectory -DARDENT_SOURCE_DIR=${ARDENT_SOURCE_DIR})
else()
  message(FATAL_ERROR "MODE must be find_package, add_subdirectory or without_gloo, not '${MODE}'")
endif()

run_step("build consumer" ${hide} ${CMAKE_COMMAND} --build ${work}/consumer-build -j2)
run_step("run consumer" ${work}/consumer-build/consumer)
if(NOT last_output MATCHES "consumer: ok")
  message(FATAL_ERROR "the consumer did not report success:\n${last_output}")
endif()
if(EXISTS ${work}/consumer-build/consumer_distributed)
  run_step("run consumer_distributed" ${work}/consumer-build/consumer_distributed)
  if(NOT last_output MATCHES "consumer_distributed: ok")
    message(FATAL_ERROR "the distributed consumer did not report success:\n${last_output}")
  endif()
elseif(MODE STREQUAL "find_package")
  message(FATAL_ERROR "find_package(ardent COMPONENTS distributed) built no consumer_distributed")
endif()
if(EXISTS ${work}/consumer-build/consumer_deploy)
  run_step("run consumer_deploy" ${work}/consumer-build/consumer_deploy)
  if(NOT last_output MATCHES "consumer_deploy: ok")
    message(FATAL_ERROR "the deploy consumer did not report success:\n${last_output}")
  endif()
elseif(NOT MODE STREQUAL "add_subdirectory")
  message(FATAL_ERROR "find_package(ardent COMPONENTS deploy) built no consumer_deploy")
endif()
file(REMOVE_RECURSE ${work})

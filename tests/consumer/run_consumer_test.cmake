# Installs netsplit into a scratch prefix, then configures, builds and runs tests/consumer
# against it with find_package. Invoked by ctest (test_consumer_package).
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
endfunction()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/lib -G ${GENERATOR} -DCMAKE_INSTALL_PREFIX=${prefix}
    -DNETSPLIT_BUILD_TESTS=OFF -DNETSPLIT_BUILD_EXAMPLES=OFF -DNETSPLIT_BUILD_BENCHMARKS=OFF)
run(${CMAKE_COMMAND} --install ${WORK_DIR}/lib)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/app -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/app)
run(${WORK_DIR}/app/consumer)
message(STATUS "consumer project built and ran against ${prefix}")

# The cuda component: found where a CUDA toolkit is (CI has one, without a GPU), and a
# clear configure error where none is (simulated by disabling the toolkit search).
if(EXISTS /usr/local/cuda/bin/nvcc)
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/app-cuda -G ${GENERATOR}
      -DCMAKE_PREFIX_PATH=${prefix} -DCONSUMER_CUDA=ON -DCUDAToolkit_ROOT=/usr/local/cuda)
  message(STATUS "the cuda component resolved against /usr/local/cuda")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/app-nocuda -G ${GENERATOR}
                        -DCMAKE_PREFIX_PATH=${prefix} -DCONSUMER_CUDA=ON -DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "asking for the cuda component without a CUDA toolkit configured:\n${out}\n${err}")
endif()
if(NOT "${out}${err}" MATCHES "component cuda needs the CUDA toolkit")
  message(FATAL_ERROR "the missing cuda component's error does not name it:\n${out}\n${err}")
endif()
message(STATUS "the cuda component without a toolkit fails clearly")

# The mpi component: refused clearly by a package installed without it, and without MPI;
# where MPI is found, a package installed with it builds and runs a program on netsplit::mpi.
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/app-nompi -G ${GENERATOR}
                        -DCMAKE_PREFIX_PATH=${prefix} -DCONSUMER_MPI=ON
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT "${out}${err}" MATCHES "component mpi was not installed")
  message(FATAL_ERROR "asking an MPI-less package for the mpi component did not fail clearly:\n${out}\n${err}")
endif()
message(STATUS "the mpi component of a package installed without it fails clearly")
find_program(mpicxx_found NAMES mpicxx)  # Debian's libopenmpi-dev
if(mpicxx_found)
  set(mprefix ${WORK_DIR}/prefix-mpi)
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/lib-mpi -G ${GENERATOR} -DCMAKE_INSTALL_PREFIX=${mprefix}
      -DNETSPLIT_BUILD_TESTS=OFF -DNETSPLIT_BUILD_EXAMPLES=OFF -DNETSPLIT_BUILD_BENCHMARKS=OFF -DNETSPLIT_ENABLE_MPI=ON)
  run(${CMAKE_COMMAND} --install ${WORK_DIR}/lib-mpi)
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/app-mpi -G ${GENERATOR}
      -DCMAKE_PREFIX_PATH=${mprefix} -DCONSUMER_MPI=ON -DCMAKE_BUILD_TYPE=Release)
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/app-mpi)
  run(${WORK_DIR}/app-mpi/mpi_consumer)
  message(STATUS "a program on netsplit::mpi built and ran against ${mprefix}")
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/app-mpi-missing -G ${GENERATOR}
                          -DCMAKE_PREFIX_PATH=${mprefix} -DCONSUMER_MPI=ON -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0 OR NOT "${out}${err}" MATCHES "component mpi needs MPI")
    message(FATAL_ERROR "asking for the mpi component without MPI did not fail clearly:\n${out}\n${err}")
  endif()
  message(STATUS "the mpi component without MPI fails clearly")
endif()

# FindCUDNN: cuDNN's header and library (cuDNN 8 or 9).
#   Hints: CUDNN_ROOT (CMake or environment variable), then the CUDA toolkit's folders.
#   Sets:  CUDNN_FOUND, CUDNN_INCLUDE_DIR, CUDNN_LIBRARY, CUDNN_VERSION; target CUDNN::cudnn.
# Installed next to strataConfig.cmake, so a project linking a CUDA build of strata finds it too.
find_path(CUDNN_INCLUDE_DIR cudnn.h
  HINTS ${CUDNN_ROOT} $ENV{CUDNN_ROOT} ${CUDAToolkit_INCLUDE_DIRS} ${CUDAToolkit_LIBRARY_ROOT}
  PATH_SUFFIXES include)
find_library(CUDNN_LIBRARY NAMES cudnn libcudnn.so.9  # a pip wheel (nvidia-cudnn-cu13) has only the versioned name
  HINTS ${CUDNN_ROOT} $ENV{CUDNN_ROOT} ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}
  PATH_SUFFIXES lib64 lib lib/x64)

if(CUDNN_INCLUDE_DIR)
  foreach(header cudnn_version.h cudnn.h)
    if(EXISTS "${CUDNN_INCLUDE_DIR}/${header}" AND NOT CUDNN_VERSION)
      file(STRINGS "${CUDNN_INCLUDE_DIR}/${header}" cudnn_version_lines REGEX "#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) ")
      foreach(part MAJOR MINOR PATCHLEVEL)
        string(REGEX REPLACE ".*#define CUDNN_${part} ([0-9]+).*" "\\1" cudnn_${part} "${cudnn_version_lines}")
      endforeach()
      if(cudnn_MAJOR MATCHES "^[0-9]+$")
        set(CUDNN_VERSION "${cudnn_MAJOR}.${cudnn_MINOR}.${cudnn_PATCHLEVEL}")
      endif()
    endif()
  endforeach()
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CUDNN REQUIRED_VARS CUDNN_LIBRARY CUDNN_INCLUDE_DIR VERSION_VAR CUDNN_VERSION)

if(CUDNN_FOUND AND NOT TARGET CUDNN::cudnn)
  add_library(CUDNN::cudnn UNKNOWN IMPORTED)
  set_target_properties(CUDNN::cudnn PROPERTIES
    IMPORTED_LOCATION "${CUDNN_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${CUDNN_INCLUDE_DIR}")
endif()
mark_as_advanced(CUDNN_INCLUDE_DIR CUDNN_LIBRARY)

# Checks the dynamic symbol table of libkbus.so (STYLE.md 14, issue 4.5):
#   * its soname is libkbus.so.0;
#   * it exports every function that <libkbus/kbus.h> declares, the batch
#     calls (kbus extensions) among them;
#   * it exports the public C++ API (kbus::Ksock, kbus::Error, ...);
#   * it exports the original C++ binding, namespace cppkbus
#     (<cppkbus/cppkbus.h>: cppkbus::Ksock, cppkbus::Message, ...);
#   * it exports nothing else: no kbus::core, kbus::protocol, kbus::client,
#     kbus::capi symbols, no std:: instantiations, no stray C symbols.
#
# cmake -DLIB=libkbus.so -DNM=nm -DREADELF=readelf -DHEADER=kbus.h -P check_exports.cmake
cmake_policy(VERSION 3.20)
foreach(v LIB NM READELF HEADER)
  if(NOT ${v})
    message(FATAL_ERROR "check_exports: -D${v}=... is required")
  endif()
endforeach()

set(problems "")

execute_process(COMMAND ${READELF} -d ${LIB} OUTPUT_VARIABLE dynamic RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "readelf -d ${LIB} failed")
endif()
if(NOT dynamic MATCHES "\\(SONAME\\)[^\n]*\\[libkbus\\.so\\.0\\]")
  string(APPEND problems "  soname is not libkbus.so.0\n")
endif()

execute_process(COMMAND ${NM} -D --defined-only -C ${LIB} OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nm -D ${LIB} failed")
endif()
string(REPLACE "\n" ";" lines "${out}")

set(exported_c "")
set(exported_cxx "")
set(exported_cppkbus "")
set(count 0)
foreach(line IN LISTS lines)
  if(line STREQUAL "")
    continue()
  endif()
  if(NOT line MATCHES "^[0-9a-fA-F]+ ([A-Za-z]) (.*)$")
    string(APPEND problems "  cannot parse: ${line}\n")
    continue()
  endif()
  set(type "${CMAKE_MATCH_1}")
  set(name "${CMAKE_MATCH_2}")
  math(EXPR count "${count} + 1")
  if(name MATCHES "^kbus_[A-Za-z0-9_]+$")
    list(APPEND exported_c "${name}")
  elseif(name MATCHES "^(typeinfo for |typeinfo name for |vtable for )?kbus::(core|protocol|client|capi|daemon|limpet|test)::")
    string(APPEND problems "  internal symbol exported: ${name}\n")
  elseif(name MATCHES "^(typeinfo for |typeinfo name for |vtable for )?kbus::")
    list(APPEND exported_cxx "${name}")
  elseif(name MATCHES "^(typeinfo for |typeinfo name for |vtable for )?cppkbus::")
    list(APPEND exported_cppkbus "${name}")
  else()
    string(APPEND problems "  not part of the public API: ${name} (${type})\n")
  endif()
endforeach()

# Every C function of the headers (<libkbus/limpet.h> too, if given as
# -DLIMPET_HEADER=...).
file(READ ${HEADER} header)
if(LIMPET_HEADER)
  file(READ ${LIMPET_HEADER} limpet_header)
  string(APPEND header "\n${limpet_header}")
endif()
string(REGEX MATCHALL "KBUS_EXPORT[^;(]*[ *](kbus_[A-Za-z0-9_]+)\\(" decls "${header}")
set(declared "")
foreach(d IN LISTS decls)
  string(REGEX REPLACE ".*[ *](kbus_[A-Za-z0-9_]+)\\($" "\\1" fn "${d}")
  list(APPEND declared ${fn})
endforeach()
list(LENGTH declared n_declared)
if(n_declared LESS 40)
  string(APPEND problems "  only ${n_declared} functions found in ${HEADER}\n")
endif()
foreach(fn IN LISTS declared)
  if(NOT fn IN_LIST exported_c)
    string(APPEND problems "  missing C function: ${fn}\n")
  endif()
endforeach()
foreach(fn IN LISTS exported_c)
  if(NOT fn IN_LIST declared)
    string(APPEND problems "  C symbol not declared in kbus.h or limpet.h: ${fn}\n")
  endif()
endforeach()
# The kbus extensions: the batch calls.
foreach(fn kbus_ksock_send_msgs kbus_ksock_read_msgs kbus_ksock_wait_for_msgs)
  if(NOT fn IN_LIST declared OR NOT fn IN_LIST exported_c)
    string(APPEND problems "  batch call not declared and exported: ${fn}\n")
  endif()
endforeach()

# The Limpet library of §10.7 (<libkbus/limpet.h>).
if(LIMPET_HEADER)
  foreach(fn kbus_serialise_message_header kbus_unserialise_message_header
             kbus_limpet_new_context kbus_limpet_set_verbosity kbus_limpet_free_context
             kbus_limpet_amend_msg_from_kbus kbus_limpet_amend_msg_to_kbus
             kbus_limpet_ReplierBindEvent_hton kbus_limpet_ReplierBindEvent_ntoh
             kbus_limpet_could_not_send_to_kbus_msg)
    if(NOT fn IN_LIST declared OR NOT fn IN_LIST exported_c)
      string(APPEND problems "  limpet.h function not declared and exported: ${fn}\n")
    endif()
  endforeach()
endif()

# The C++ API (a sample of each header).
set(required_cxx
  "^kbus::Ksock::try_open\\(int, kbus::Mode,"
  "^kbus::Ksock::open\\(int, kbus::Mode,"
  "^kbus::Ksock::~Ksock\\(\\)"
  "^kbus::Ksock::try_send_msg\\(kbus::Message const&\\)"
  "^kbus::Ksock::try_send_pointy\\("
  "^kbus::default_bus_dir(\\[abi:cxx11\\])?\\(\\)"
  "^kbus::errno_name(\\[abi:cxx11\\])?\\(int\\)"
  "^kbus::make_reply\\(kbus::Message const&,"
  "^kbus::encode_entire(\\[abi:cxx11\\])?\\(kbus::Message const&, unsigned int\\)"
  "^kbus::decode_entire\\(std::"
  "^kbus::MessageId::to_string(\\[abi:cxx11\\])?\\(\\) const"
  "^kbus::Message::to_string(\\[abi:cxx11\\])?\\(\\) const"
  "^typeinfo for kbus::Error$"
)
foreach(re IN LISTS required_cxx)
  set(found FALSE)
  foreach(name IN LISTS exported_cxx)
    if(name MATCHES "${re}")
      set(found TRUE)
      break()
    endif()
  endforeach()
  if(NOT found)
    string(APPEND problems "  missing C++ symbol matching ${re}\n")
  endif()
endforeach()

# The cppkbus binding (a sample of each class).
set(required_cppkbus
  "^cppkbus::Constants::Get\\(\\)"
  "^cppkbus::Error::ToString(\\[abi:cxx11\\])?\\(int\\)"
  "^cppkbus::MessageFlags::ToString(\\[abi:cxx11\\])?\\(unsigned int\\)"
  "^cppkbus::PollFlags::ToString(\\[abi:cxx11\\])?\\(int\\)"
  "^cppkbus::MessageId::compare\\(cppkbus::MessageId const&\\) const"
  "^cppkbus::OrigFrom::ToString(\\[abi:cxx11\\])?\\(\\) const"
  "^cppkbus::Message::Message\\(\\)"
  "^cppkbus::Message::BecomesReplyTo\\(cppkbus::Message const&\\)"
  "^cppkbus::Message::ToString(\\[abi:cxx11\\])?\\(\\) const"
  "^cppkbus::Device::FindReplier\\(unsigned int&, std::"
  "^cppkbus::Ksock::Ksock\\(int, std::_Ios_Openmode\\)"
  "^cppkbus::Ksock::Receive\\(cppkbus::Message&\\)"
  "^cppkbus::Ksock::WaitForMessage\\(int&, int, int\\)"
  "^cppkbus::operator<<\\(std::ostream&, cppkbus::Message const&\\)"
  "^cppkbus::Error::operator<<\\(std::ostream&, cppkbus::Error::Enum const&\\)"
)
foreach(re IN LISTS required_cppkbus)
  set(found FALSE)
  foreach(name IN LISTS exported_cppkbus)
    if(name MATCHES "${re}")
      set(found TRUE)
      break()
    endif()
  endforeach()
  if(NOT found)
    string(APPEND problems "  missing cppkbus symbol matching ${re}\n")
  endif()
endforeach()

list(LENGTH exported_c n_c)
list(LENGTH exported_cxx n_cxx)
list(LENGTH exported_cppkbus n_cppkbus)
if(problems)
  message(FATAL_ERROR "libkbus.so exports (${count} symbols):\n${problems}")
endif()
message(STATUS "libkbus.so: soname libkbus.so.0, ${n_c} C functions, ${n_cxx} C++ symbols, ${n_cppkbus} cppkbus symbols, nothing else")

/* cppkbus/cppkbus.h - the C++ binding of the original KBUS, namespace
 * cppkbus (KBUS-SPEC.md §12.3), working with kbusd.
 *
 * A program written for the original cppkbus builds unchanged, with any
 * C++ compiler mode from C++98 on (no -std flag needed), and links libkbus:
 *
 *     c++ prog.cpp $(pkg-config --cflags --libs kbus)
 *
 * It talks to the kbusd serving $KBUS_DIR; the device "/dev/kbusN" is bus
 * N of that daemon.
 *
 * Conventions (those of the original):
 *
 *   - Nothing throws (short of std::bad_alloc from std::string when memory
 *     runs out, as in the original). Functions that can fail return an int:
 *     0 (or 1/0 where said) on success, else a negative error code: -errno with the
 *     KBUS meanings of KBUS-SPEC.md §13.5 (cppkbus::Error::MessageEBADMSG
 *     is -EBADMSG ...), or one of the library's own codes
 *     (cppkbus::Error::MessageIsEmpty ...). Error::ToString() explains any
 *     of them. As with the C library, -EBADF means the Ksock is not open,
 *     and -ECONNRESET / -EPIPE / -EPROTO that kbusd went away or broke the
 *     protocol.
 *   - Message getters that cannot give a value because the message is
 *     empty return -1.
 *   - Device, Ksock and Message are not thread-safe: use one per thread, or
 *     lock around them. Ksock and Message cannot be copied (NoCopy).
 *
 * This layer is a thin one over the C API of <libkbus/kbus.h>: a Ksock
 * holds a kbus_ksock_t, a Message holds a kbus_message_t.
 */
#ifndef CPPKBUS_CPPKBUS_H
#define CPPKBUS_CPPKBUS_H

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include <ios>
#include <string>

#include "../libkbus/kbus.h"

namespace cppkbus {

/* The names of the messages KBUS itself sends (KBUS-SPEC.md §6.3). */
class KBUS_EXPORT Constants {
 public:
  static const Constants& Get();

  const std::string kMessageNameReplierGone;        /* $.KBUS.Replier.GoneAway */
  const std::string kMessageNameReplierIgnored;     /* $.KBUS.Replier.Ignored */
  const std::string kMessageNameReplierUnbound;     /* $.KBUS.Replier.Unbound */
  const std::string kMessageNameReplierDisappeared; /* $.KBUS.Replier.Disappeared */
  const std::string kMessageNameErrorSending;       /* $.KBUS.ErrorSending */
  const std::string kMessageNameUnbindEventsLost;   /* $.KBUS.UnbindEventsLost */
  const std::string kMessageNameReplierBindEvent;   /* $.KBUS.ReplierBindEvent */

 private:
  Constants();
  Constants(const Constants&);
  Constants& operator=(const Constants&);
};

/* Error codes. Functions return them as plain ints. */
namespace Error {
enum Enum {
  /* The library's own codes, far from any errno. */
  MessageIsEmpty = -(INT_MAX - 1),        /* an empty Message where one with content is needed */
  MessageIsNotEmpty = -(INT_MAX - 2),     /* Ksock::Receive into a Message that is not empty */
  MessageHasNoId = -(INT_MAX - 3),        /* replying to a Request that was never sent (id [0,0]) */
  DeviceHasNoName = -(INT_MAX - 4),       /* a Device given an empty name */
  DeviceModeUnset = -(INT_MAX - 5),       /* a Device mode with neither std::ios::in nor out */
  InvalidArguments = -(INT_MAX - 6),      /* an argument the library cannot use (see each call) */
  MessageNotInitialized = -(INT_MAX - 7), /* a Message whose construction failed */
  MessageNotInitialised = MessageNotInitialized,

  /* The errors of KBUS itself (KBUS-SPEC.md §13.5). */
  MessageEADDRINUSE = -EADDRINUSE,
  MessageEADDRNOTAVAIL = -EADDRNOTAVAIL,
  MessageEALREADY = -EALREADY,
  MessageEBADMSG = -EBADMSG,
  MessageEBUSY = -EBUSY,
  MessageECONNREFUSED = -ECONNREFUSED,
  MessageEINVAL = -EINVAL,
  MessageEMSGSIZE = -EMSGSIZE,
  MessageENAMETOOLONG = -ENAMETOOLONG,
  MessageENOENT = -ENOENT,
  MessageENOLCK = -ENOLCK,
  MessageENOMSG = -ENOMSG,
  MessageEPIPE = -EPIPE,
  MessageEFAULT = -EFAULT,
  MessageENOMEM = -ENOMEM,
  MessageEAGAIN = -EAGAIN
};

/* What an error code means, for a person: "EADDRINUSE (Address already in
 * use): a replier is already bound to that exact message name",
 * "MessageIsEmpty: the message is empty", "Success" for 0. Any negative
 * errno is named; other values give "Unknown error N". */
KBUS_EXPORT std::string ToString(int error);

/* Writes ToString(e). (Declared in namespace Error, where argument-dependent
 * lookup finds it: `std::cout << static_cast<Error::Enum>(rc)` works
 * without a using-declaration.) */
KBUS_EXPORT std::ostream& operator<<(std::ostream& os, const Enum& e);
}  // namespace Error

/* Message flag bits (KBUS-SPEC.md §3.3). */
namespace MessageFlags {
enum Enum {
  WantReply = KBUS_BIT_WANT_A_REPLY,
  WantYouToReply = KBUS_BIT_WANT_YOU_TO_REPLY,
  Synthetic = KBUS_BIT_SYNTHETIC,
  Urgent = KBUS_BIT_URGENT,
  AllOrWait = KBUS_BIT_ALL_OR_WAIT,
  AllOrFail = KBUS_BIT_ALL_OR_FAIL
};
/* The mnemonics of the bits set, joined by '|' in the order
 * REQ|YOU|SYN|URG|aWT|aFL ("" if none is set; other bits are not shown). */
KBUS_EXPORT std::string ToString(uint32_t flags);
}  // namespace MessageFlags

/* What Ksock::WaitForMessage waits for and reports. */
namespace PollFlags {
enum Enum {
  Receive = 1,  /* a message can be received (the queue is not empty) */
  Transmit = 2, /* a message can be sent (open for writing, no send pending) */
  Error = 4     /* the Ksock failed (kbusd went away) */
};
/* "Receive|Transmit|Error" for the bits set ("" if none). */
KBUS_EXPORT std::string ToString(int flags);
}  // namespace PollFlags

/* Derive from this to forbid copying. */
class KBUS_EXPORT NoCopy {
 protected:
  NoCopy() {}
  ~NoCopy() {}

 private:
  NoCopy(const NoCopy&);
  NoCopy& operator=(const NoCopy&);
};

/* A message id {network_id, serial_num} (KBUS-SPEC.md §1.5); [0,0] is "no
 * id". Ordered by network id, then serial number. */
class KBUS_EXPORT MessageId {
 public:
  MessageId() : mNetworkId(0), mSerialNum(0) {}
  MessageId(uint32_t networkId, uint32_t serialNum)
      : mNetworkId(networkId), mSerialNum(serialNum) {}
  explicit MessageId(const kbus_msg_id_t& id)
      : mNetworkId(id.network_id), mSerialNum(id.serial_num) {}

  /* -1, 0 or 1 as this is less than, equal to or greater than other. */
  int compare(const MessageId& other) const;
  bool operator==(const MessageId& other) const { return compare(other) == 0; }
  bool operator!=(const MessageId& other) const { return compare(other) != 0; }
  bool operator<(const MessageId& other) const { return compare(other) < 0; }
  bool operator>(const MessageId& other) const { return compare(other) > 0; }
  /* "[n,s]" */
  std::string ToString() const;

  uint32_t mNetworkId;
  uint32_t mSerialNum;
};

/* The orig_from / final_to fields {network_id, local_id} used by Limpets. */
class KBUS_EXPORT OrigFrom {
 public:
  OrigFrom() : mNetworkId(0), mLocalId(0) {}
  OrigFrom(uint32_t networkId, uint32_t localId) : mNetworkId(networkId), mLocalId(localId) {}
  explicit OrigFrom(const kbus_orig_from_t& o) : mNetworkId(o.network_id), mLocalId(o.local_id) {}

  int compare(const OrigFrom& other) const;
  bool operator==(const OrigFrom& other) const { return compare(other) == 0; }
  bool operator!=(const OrigFrom& other) const { return compare(other) != 0; }
  bool operator<(const OrigFrom& other) const { return compare(other) < 0; }
  bool operator>(const OrigFrom& other) const { return compare(other) > 0; }
  /* "[n,l]" */
  std::string ToString() const;

  uint32_t mNetworkId;
  uint32_t mLocalId;
};

class Ksock;

/* A KBUS message. An empty Message (the default constructor) is what
 * Ksock::Receive fills in. A Message built from a name is "entire" (it
 * holds copies of its name and data), unless copyData is false: then it is
 * "pointy", referring to the caller's data, which must stay valid and
 * unchanged until the message has been sent.
 *
 * If a constructor cannot build the message (data NULL with nr_bytes > 0,
 * a name or data too long for a message, no memory), the Message is left
 * empty and remembers it: sending it gives Error::MessageNotInitialized. */
class KBUS_EXPORT Message : public NoCopy {
 public:
  Message();
  Message(const std::string& name);
  Message(const char* name);
  /* isRequest: set MessageFlags::WantReply. */
  Message(const std::string& name, bool isRequest);
  Message(const std::string& name, const void* data, size_t nr_bytes, uint32_t flags,
          bool copyData = true, bool isRequest = false);
  /* Every header field: id, inReplyTo, origFrom and finalTo may be NULL
   * (meaning zero). */
  Message(const std::string& name, uint32_t flags, const MessageId* id, const MessageId* inReplyTo,
          uint32_t to, uint32_t from, const OrigFrom* origFrom, const OrigFrom* finalTo,
          const void* data, size_t nr_bytes, bool copyData = true);
  ~Message();

  /* Makes this message the Reply to `request`, which must be a Request this
   * Ksock is to answer (WantReply and WantYouToReply set, as received):
   * name := its name, to := its from, in_reply_to := its id; the data and
   * flags of this message are kept, every other field is cleared. 0, or
   * -EBADMSG if `request` is not such a Request (also if it is empty),
   * Error::MessageHasNoId if it has id [0,0] (never sent), or -ENOMEM. */
  int BecomesReplyTo(const Message& request);
  /* Makes this message a Stateful Request following `earlier`: if earlier
   * is a Reply, to := its from and final_to := its orig_from; if it is a
   * Stateful Request, its to and final_to. Sets MessageFlags::WantReply.
   * Name and data are kept. 0, or -EBADMSG if earlier is neither (also if
   * it is empty), Error::MessageIsEmpty if this message is empty (it has
   * no name to keep), or -ENOMEM. */
  int BecomesStatefulRequest(const Message& earlier);

  /* The data (NULL if none, or if the message is empty), and its length
   * (-1 if empty). */
  const uint8_t* GetData() const;
  int GetDataLength() const;
  /* 0, or -1 if empty. */
  int GetName(std::string& outName) const;
  /* Entire: holds its name and data (every received message is). */
  bool IsEntire() const;
  bool IsEmpty() const;
  int GetFlags(uint32_t& outFlags) const; /* -1 if empty */
  int SetFlags(uint32_t flags);           /* -1 if empty */

  bool IsRequest() const;         /* WantReply set */
  bool WantsUsToReply() const;    /* WantReply and WantYouToReply set */
  bool IsStatefulRequest() const; /* a Request with a non-zero to */
  bool IsReply() const;           /* in_reply_to is not [0,0] */
  /* A $.KBUS.ReplierBindEvent (not a Reply) with its data. */
  bool IsReplierBindEvent() const;
  /* The parts of a Replier Bind Event (KBUS-SPEC.md §3.6): 0, or -1 if this
   * is not one (or its data is malformed). */
  int GetReplierBindEventData(bool& isBind, uint32_t& binder, std::string& name) const;

  /* Header fields: 0, or -1 if the message is empty. */
  int GetMessageId(MessageId& outId) const;
  int GetInReplyTo(MessageId& outId) const;
  int GetTo(uint32_t& outTo) const;
  int GetFrom(uint32_t& outFrom) const;
  int GetOrigFrom(OrigFrom& outOrigFrom) const;
  int GetFinalTo(OrigFrom& outFinalTo) const;

  /* One line: <Request "$.Fred" id=[0,5] from=3 flags=1 REQ data="abc">
   * (see docs/decisions.md for the whole format). */
  std::string ToString() const;

 private:
  friend class Ksock;
  int Init(const std::string& name, uint32_t flags, const void* data, size_t nr_bytes,
           bool copyData);
  int Rebuild(const std::string& name);
  void Clear();

  kbus_message_t* mMsg; /* NULL when empty */
  std::string mName;    /* a pointy message's name points here */
  int mInitError;       /* why construction failed (0 if it did not) */
};

/* A KBUS device (bus): "/dev/kbusN" is bus N of the kbusd serving
 * $KBUS_DIR. The mode says how Ksocks on it are opened: std::ios::in
 * (read only), std::ios::out (write only) or both (read/write, the
 * default). A Device holds no connection: the calls below each open a
 * short-lived Ksock on the bus (which uses up one Ksock id). */
class KBUS_EXPORT Device {
 public:
  explicit Device(int deviceNumber = 0,
                  std::ios_base::openmode mode = std::ios::in | std::ios::out);
  explicit Device(const std::string& deviceName,
                  std::ios_base::openmode mode = std::ios::in | std::ios::out);
  explicit Device(const char* deviceName,
                  std::ios_base::openmode mode = std::ios::in | std::ios::out);

  /* Whether the device can be opened in its mode now (the bus exists). */
  bool IsOpen() const;
  /* VERBOSE (per bus): turn on or off. 0 or -errno. */
  int MakeKernelVerbose(bool verbose = true) const;
  int QueryKernelVerbose(bool& outVerbose) const;
  /* REPORTREPLIERBINDS (per bus): turn on or off. 0 or -errno. */
  int ReportReplierBinds(bool report = true) const;
  int ReportingReplierBinds(bool& outReporting) const;
  /* NEWDEVICE: creates the next bus, *outNumber its number. 0 or -errno. */
  int AddNewDevice(uint32_t& outNumber) const;
  /* The number, or -1 if the Device was made from a name. */
  int GetDeviceNumber() const;
  /* 0, or Error::DeviceHasNoName. */
  int GetDeviceName(std::string& outName) const;
  /* 0, or Error::DeviceModeUnset. */
  int GetDeviceMode(std::ios_base::openmode& outMode) const;
  /* REPLIER: the Ksock bound as replier to exactly `name` (no wildcard
   * resolution). 1 if there is one (outId is its id), 0 if not (outId 0),
   * or -errno. */
  int FindReplier(uint32_t& outId, const std::string& name) const;
  /* <Device 0, "/dev/kbus0" open for read/write> */
  std::string ToString() const;

 private:
  friend class Ksock;
  /* Opens a kbus_ksock_t on this device: >= 0, or an error code. */
  int OpenKsock() const;

  int mNumber; /* -1 if by name */
  std::string mName;
  std::ios_base::openmode mMode;
};

/* A Ksock: one connection to a bus, as an open /dev/kbusN was. The
 * constructors only say where; Open() opens. The destructor closes. */
class KBUS_EXPORT Ksock : public NoCopy {
 public:
  Ksock(const Device& device);
  Ksock(int deviceNumber, std::ios_base::openmode mode = std::ios::in | std::ios::out);
  Ksock(const std::string& deviceName, std::ios_base::openmode mode = std::ios::in | std::ios::out);
  Ksock(const char* deviceName, std::ios_base::openmode mode = std::ios::in | std::ios::out);
  ~Ksock();

  /* 0, -ENOENT if there is no such bus, -EALREADY if already open,
   * Error::DeviceHasNoName / Error::DeviceModeUnset, or another -errno. */
  int Open();
  /* CLOSE (KBUS-SPEC.md §7.2). 0, or -EBADF if not open. */
  int Close();
  bool IsOpen() const;
  const Device& GetDevice() const;

  /* BIND / UNBIND as listener or replier. */
  int Bind(const std::string& name, bool asReplier = false);
  int Unbind(const std::string& name, bool asReplier = false);
  /* KSOCKID, LASTSENT. */
  int GetId(uint32_t& outId);
  int GetLastMessageId(MessageId& outId);
  /* MAXMSGS: the queue limit (count >= 1, else Error::InvalidArguments). */
  int SetMaxUnreadMessages(uint32_t count);
  int GetMaxUnreadMessages(uint32_t& outCount);
  /* MAXMSGSIZE: the bus's limit, its absolute maximum, or set the limit
   * (size 100 .. absolute maximum, else -EINVAL). */
  int GetMaxMessageSize(uint32_t& outSize);
  int GetSystemMaxMessageSize(uint32_t& outSize);
  int SetMaxMessageSize(uint32_t size);
  /* NUMMSGS, UNREPLIEDTO. */
  int HowManyMessagesUnread(uint32_t& outCount);
  int HowManyMessagesUnrepliedTo(uint32_t& outCount);
  /* MSGONLYONCE: set, and ask. */
  int ReceiveMessagesOnlyOnce(bool onlyOnce = true);
  int WillReceiveOnlyOnce(bool& outOnlyOnce);

  /* SEND the message; *outId (if given) its id, also after -EAGAIN (the send
   * is then pending). 0, -errno (§5), Error::MessageIsEmpty or
   * Error::MessageNotInitialized. */
  int Send(const Message& msg, MessageId* outId = NULL);
  /* Sets MessageFlags::WantReply on msg, then sends it. */
  int SendRequest(Message& msg, MessageId* outId = NULL);
  /* msg.BecomesReplyTo(inReplyTo), then sends it. */
  int SendReply(Message& msg, const Message& inReplyTo, MessageId* outId = NULL);
  /* msg.BecomesStatefulRequest(earlier), then sends it. */
  int SendStatefulRequest(Message& msg, const Message& earlier, MessageId* outId = NULL);
  /* Takes the next message of the queue into msg, which must be empty
   * (else Error::MessageIsNotEmpty). 1 if there was one, 0 if not, -errno. */
  int Receive(Message& msg);
  /* Waits until one of inFlags (PollFlags::Receive, PollFlags::Transmit)
   * holds, at most timeout_ms milliseconds (0: do not wait; negative: no
   * limit). 1 with outFlags the PollFlags that hold, 0 if the time ran out
   * (outFlags 0), or -errno (-EINTR if a signal interrupted the wait;
   * -ECONNRESET, with outFlags PollFlags::Error, if kbusd went away).
   * Error::InvalidArguments if inFlags asks for neither. */
  int WaitForMessage(int& outFlags, int inFlags = PollFlags::Receive, int timeout_ms = -1);
  /* The descriptor to poll()/select() on (readable: a message waits;
   * writable: a message can be sent). Never read, write or close it. */
  int GetFd(int& outFd) const;

  /* <Ksock 3 on device 0, "/dev/kbus0" open for read/write> */
  std::string ToString() const;

 private:
  Device mDevice;
  kbus_ksock_t mKsock; /* -1 when closed */
  uint32_t mId;
};

KBUS_EXPORT std::ostream& operator<<(std::ostream& os, const OrigFrom& o);
KBUS_EXPORT std::ostream& operator<<(std::ostream& os, const MessageId& id);
KBUS_EXPORT std::ostream& operator<<(std::ostream& os, const Device& d);
KBUS_EXPORT std::ostream& operator<<(std::ostream& os, const Message& m);
KBUS_EXPORT std::ostream& operator<<(std::ostream& os, const Ksock& k);

}  // namespace cppkbus

#endif /* CPPKBUS_CPPKBUS_H */

//! mDNS discovery (mdns-sd): service types, instances, host names and TXT records
//! as evidence. (Filled in by the mDNS work.)

//! DHCPv4: the server state machine (pure), packet capture parsing for observer
//! mode, and dnsmasq lease files. (Filled in by the DHCP work.)

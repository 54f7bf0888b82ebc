"""Integrations of vfd with other systems: the OpenStack os-vif plugin and neutron port profiles."""

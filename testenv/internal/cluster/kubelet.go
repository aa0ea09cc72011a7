package cluster

import (
	"context"
	"fmt"
	"math/big"
	"net"
	"runtime"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// kubelet is a stand-in for a real kubelet on a single fake Node. It runs no
// containers. It does what the control plane expects from a kubelet, so that
// the real controllers (ReplicaSet, EndpointSlice, namespace, garbage
// collector, node lifecycle) behave as in a real cluster:
//
//   - registers the Node, Ready, with generous capacity, and renews its Lease;
//   - binds pending pods that no one scheduled to the Node (there is no
//     kube-scheduler), honouring spec.nodeSelector;
//   - reports bound pods Running and Ready with a pod IP taken in order from
//     the cluster's pod CIDR;
//   - finishes the deletion of terminating pods (grace period 0), as the
//     kubelet does once containers are stopped.
//
// In network mode (enableNetwork) it also runs a pod as a real process, in
// the pod's own network namespace with its pod IP, when the pod's first
// container's command[0] names an executable of the --pod-binaries
// directory; such a pod is Ready only while its first containerPort accepts
// TCP connections, and its process is stopped when the pod is deleted.
type kubelet struct {
	client   kubernetes.Interface
	nodeName string
	version  string
	ipam     *ipam
	queue    workqueue.TypedRateLimitingInterface[types.NamespacedName]
	pods     cache.Indexer
	node     *corev1.Node
	// hostIP is the Node's InternalIP and the pods' hostIP: 127.0.0.1, or
	// the cluster's WAN address in network mode.
	hostIP string
	// net runs pods as processes (network mode); nil otherwise.
	net *podNetwork
}

const (
	leaseDuration = 40 * time.Second
	leaseRenew    = 10 * time.Second
	statusRenew   = time.Minute
	kubeletHostIP = "127.0.0.1"
	// podStopGrace bounds how long a pod process gets between SIGTERM and
	// SIGKILL (the pod's own grace period, if shorter, wins).
	podStopGrace = 5 * time.Second
)

func newKubelet(client kubernetes.Interface, nodeName, podCIDR, version string) (*kubelet, error) {
	alloc, err := newIPAM(podCIDR)
	if err != nil {
		return nil, err
	}
	k := &kubelet{
		client:   client,
		nodeName: nodeName,
		version:  version,
		ipam:     alloc,
		hostIP:   kubeletHostIP,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[types.NamespacedName](),
			workqueue.TypedRateLimitingQueueConfig[types.NamespacedName]{Name: "testenv-kubelet"}),
	}
	return k, nil
}

// enableNetwork makes the kubelet run pods whose first container's
// command[0] names an executable of binDir as processes in their own
// network namespaces, linked to the cluster namespace clusterNS.
func (k *kubelet) enableNetwork(clusterNS, hostIP, binDir, logDir, apiServer string) {
	k.hostIP = hostIP
	k.net = &podNetwork{
		clusterNS: clusterNS,
		hostIP:    hostIP,
		binDir:    binDir,
		logDir:    logDir,
		apiServer: apiServer,
		changed:   func(key types.NamespacedName) { k.queue.Add(key) },
		procs:     map[types.UID]*podProc{},
	}
}

// run blocks until ctx is done.
func (k *kubelet) run(ctx context.Context) error {
	defer k.queue.ShutDown()
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := k.registerNode(ctx); err != nil {
			klog.InfoS("testenv-kubelet: registering node", "node", k.nodeName, "err", err)
			return false, nil
		}
		return true, nil
	}); err != nil {
		return fmt.Errorf("registering node %s: %w", k.nodeName, err)
	}
	go k.heartbeat(ctx)

	factory := informers.NewSharedInformerFactory(k.client, 0)
	podInformer := factory.Core().V1().Pods().Informer()
	k.pods = podInformer.GetIndexer()
	enqueue := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		k.queue.Add(types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name})
	}
	if _, err := podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				if k.net != nil {
					// Deleted without passing through sync's deletion
					// (forced): stop the process all the same.
					go func() {
						if err := k.net.kill(pod.UID, podStopGrace); err != nil {
							klog.InfoS("testenv-kubelet: stopping pod process", "pod", klog.KObj(pod), "err", err)
						}
					}()
				}
				k.ipam.release(pod.UID)
			}
		},
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInformer.HasSynced) {
		return ctx.Err()
	}
	// Pod IPs already handed out (before a restart) stay taken.
	for _, obj := range k.pods.List() {
		pod := obj.(*corev1.Pod)
		if pod.Spec.NodeName == k.nodeName && !pod.Spec.HostNetwork && pod.Status.PodIP != "" {
			k.ipam.use(pod.UID, pod.Status.PodIP)
		}
	}
	for range 2 {
		go k.worker(ctx)
	}
	klog.InfoS("testenv-kubelet: running", "node", k.nodeName)
	<-ctx.Done()
	if k.net != nil {
		k.net.killAll()
	}
	return nil
}

func (k *kubelet) nodeObject() *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("32"),
		corev1.ResourceMemory:           resource.MustParse("256Gi"),
		corev1.ResourcePods:             resource.MustParse("10000"),
		corev1.ResourceEphemeralStorage: resource.MustParse("1Ti"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: k.nodeName,
			Labels: map[string]string{
				corev1.LabelHostname:   k.nodeName,
				corev1.LabelOSStable:   "linux",
				corev1.LabelArchStable: runtime.GOARCH,
				"testenv.liqo.io/fake": "true",
			},
		},
		Spec: corev1.NodeSpec{PodCIDR: k.ipam.cidr.String(), PodCIDRs: []string{k.ipam.cidr.String()}},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: k.hostIP},
				{Type: corev1.NodeHostName, Address: k.nodeName},
			},
			NodeInfo: corev1.NodeSystemInfo{
				MachineID:               k.nodeName,
				SystemUUID:              k.nodeName,
				BootID:                  k.nodeName,
				KernelVersion:           "testenv",
				OSImage:                 "testenv kubelet stand-in (no containers run)",
				ContainerRuntimeVersion: "testenv://" + k.version,
				KubeletVersion:          k.version,
				KubeProxyVersion:        k.version,
				OperatingSystem:         "linux",
				Architecture:            runtime.GOARCH,
			},
		},
	}
}

func nodeConditions(now metav1.Time) []corev1.NodeCondition {
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg,
			LastHeartbeatTime: now, LastTransitionTime: now}
	}
	return []corev1.NodeCondition{
		cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
		cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
		cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
		cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "testenv kubelet stand-in is posting ready status"),
	}
}

// registerNode creates the Node (or adopts the existing one after a restart)
// and reports it Ready.
func (k *kubelet) registerNode(ctx context.Context) error {
	want := k.nodeObject()
	node, err := k.client.CoreV1().Nodes().Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		node, err = k.client.CoreV1().Nodes().Get(ctx, k.nodeName, metav1.GetOptions{})
	}
	if err != nil {
		return err
	}
	// Drop taints the node lifecycle controller may have put on while the
	// cluster was stopped; they would keep pods from being bound.
	if len(node.Spec.Taints) > 0 {
		node.Spec.Taints = nil
		if node, err = k.client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	k.node = node
	return k.updateNodeStatus(ctx)
}

func (k *kubelet) updateNodeStatus(ctx context.Context) error {
	node, err := k.client.CoreV1().Nodes().Get(ctx, k.nodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	want := k.nodeObject()
	node.Status.Capacity = want.Status.Capacity
	node.Status.Allocatable = want.Status.Allocatable
	node.Status.Addresses = want.Status.Addresses
	node.Status.NodeInfo = want.Status.NodeInfo
	node.Status.Conditions = nodeConditions(metav1.Now())
	updated, err := k.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	k.node = updated
	return nil
}

// heartbeat renews the node Lease (what the node lifecycle controller reads)
// and, less often, the Ready condition.
func (k *kubelet) heartbeat(ctx context.Context) {
	lastStatus := time.Now()
	for {
		if err := k.renewLease(ctx); err != nil && ctx.Err() == nil {
			klog.InfoS("testenv-kubelet: renewing lease", "err", err)
		}
		if time.Since(lastStatus) >= statusRenew {
			if err := k.updateNodeStatus(ctx); err != nil && ctx.Err() == nil {
				klog.InfoS("testenv-kubelet: updating node status", "err", err)
			} else {
				lastStatus = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(leaseRenew):
		}
	}
}

func (k *kubelet) renewLease(ctx context.Context) error {
	leases := k.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	lease, err := leases.Get(ctx, k.nodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name:      k.nodeName,
				Namespace: corev1.NamespaceNodeLease,
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: "v1", Kind: "Node", Name: k.nodeName, UID: k.node.UID,
				}},
			},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(k.nodeName),
				LeaseDurationSeconds: ptr.To(int32(leaseDuration / time.Second)),
				RenewTime:            &now,
			},
		}
		_, err = leases.Create(ctx, lease, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	lease.Spec.HolderIdentity = ptr.To(k.nodeName)
	lease.Spec.LeaseDurationSeconds = ptr.To(int32(leaseDuration / time.Second))
	lease.Spec.RenewTime = &now
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}

func (k *kubelet) worker(ctx context.Context) {
	for {
		key, quit := k.queue.Get()
		if quit {
			return
		}
		err := k.sync(ctx, key)
		if err != nil && ctx.Err() == nil {
			if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
				klog.InfoS("testenv-kubelet: syncing pod", "pod", key, "err", err)
			}
			k.queue.AddRateLimited(key)
		} else {
			k.queue.Forget(key)
		}
		k.queue.Done(key)
	}
}

func (k *kubelet) sync(ctx context.Context, key types.NamespacedName) error {
	obj, exists, err := k.pods.GetByKey(key.String())
	if err != nil {
		return err
	}
	if !exists {
		return nil
	}
	pod := obj.(*corev1.Pod)
	pods := k.client.CoreV1().Pods(pod.Namespace)

	switch {
	case pod.Spec.NodeName == "":
		if pod.DeletionTimestamp != nil || !k.schedulable(pod) {
			return nil
		}
		binding := &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: k.nodeName},
		}
		err := pods.Bind(ctx, binding, metav1.CreateOptions{})
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil // already bound or gone; the informer tells us more
		}
		return err

	case pod.Spec.NodeName != k.nodeName:
		return nil

	case pod.DeletionTimestamp != nil:
		if k.net != nil {
			grace := podStopGrace
			if g := pod.DeletionGracePeriodSeconds; g != nil && time.Duration(*g)*time.Second < grace {
				grace = time.Duration(*g) * time.Second
			}
			if err := k.net.kill(pod.UID, grace); err != nil {
				return fmt.Errorf("stopping the pod's process: %w", err)
			}
		}
		k.ipam.release(pod.UID)
		err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To(int64(0)),
			Preconditions:      metav1.NewUIDPreconditions(string(pod.UID)),
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err

	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		k.ipam.release(pod.UID)
		return nil
	}

	if bin := k.net.binary(pod); bin != "" {
		return k.syncProcess(ctx, pod, bin)
	}
	if isRunningAndReady(pod) {
		return nil
	}
	status, err := k.runningStatus(pod, true, 0)
	if err != nil {
		return err
	}
	updated := pod.DeepCopy()
	updated.Status = *status
	_, err = pods.UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	return err
}

// schedulable reports whether this node fits the pod, in the few ways a
// single-node test cluster needs: the default scheduler and nodeSelector.
func (k *kubelet) schedulable(pod *corev1.Pod) bool {
	if pod.Spec.SchedulerName != "" && pod.Spec.SchedulerName != corev1.DefaultSchedulerName {
		return false
	}
	if len(pod.Spec.NodeSelector) > 0 && k.node != nil &&
		!labels.SelectorFromSet(pod.Spec.NodeSelector).Matches(labels.Set(k.node.Labels)) {
		return false
	}
	return true
}

func isRunningAndReady(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
		return false
	}
	if len(pod.Status.ContainerStatuses) != len(pod.Spec.Containers) {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// syncProcess runs the pod as a process (network mode) and reports its
// readiness: Running once the process runs, Ready while its first
// containerPort accepts connections.
func (k *kubelet) syncProcess(ctx context.Context, pod *corev1.Pod, bin string) error {
	podIP := pod.Status.PodIP
	if podIP == "" {
		ip, err := k.ipam.allocate(pod.UID)
		if err != nil {
			return err
		}
		podIP = ip
	}
	if err := k.net.ensure(ctx, pod, bin, podIP); err != nil {
		return err
	}
	_, ready, restarts := k.net.state(pod.UID)
	if pod.Status.PodIP == podIP && isRunningAndReady(pod) == ready &&
		len(pod.Status.ContainerStatuses) > 0 && pod.Status.ContainerStatuses[0].RestartCount == restarts {
		return nil
	}
	status, err := k.runningStatus(pod, ready, restarts)
	if err != nil {
		return err
	}
	status.PodIP, status.PodIPs = podIP, []corev1.PodIP{{IP: podIP}}
	updated := pod.DeepCopy()
	updated.Status = *status
	_, err = k.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	return err
}

// runningStatus is the status of a running pod; ready tells whether its
// containers are ready, restarts is the first container's restart count.
func (k *kubelet) runningStatus(pod *corev1.Pod, ready bool, restarts int32) (*corev1.PodStatus, error) {
	now := metav1.Now()
	podIP := pod.Status.PodIP
	switch {
	case pod.Spec.HostNetwork:
		podIP = k.hostIP
	case podIP == "":
		ip, err := k.ipam.allocate(pod.UID)
		if err != nil {
			return nil, err
		}
		podIP = ip
	}
	start := now
	if pod.Status.StartTime != nil {
		start = *pod.Status.StartTime
	}
	cond := func(t corev1.PodConditionType) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now}
	}
	readyCond := func(t corev1.PodConditionType) corev1.PodCondition {
		c := cond(t)
		if !ready {
			c.Status, c.Reason = corev1.ConditionFalse, "ContainersNotReady"
		}
		return c
	}
	status := &corev1.PodStatus{
		Phase: corev1.PodRunning,
		Conditions: []corev1.PodCondition{
			cond(corev1.PodReadyToStartContainers),
			cond(corev1.PodInitialized),
			readyCond(corev1.PodReady),
			readyCond(corev1.ContainersReady),
			cond(corev1.PodScheduled),
		},
		HostIP:    k.hostIP,
		HostIPs:   []corev1.HostIP{{IP: k.hostIP}},
		PodIP:     podIP,
		PodIPs:    []corev1.PodIP{{IP: podIP}},
		StartTime: &start,
		QOSClass:  pod.Status.QOSClass,
	}
	for _, c := range pod.Spec.InitContainers {
		status.InitContainerStatuses = append(status.InitContainerStatuses, corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ImageID:     fakeImageID(c.Image),
			ContainerID: fakeContainerID(pod, c.Name),
			Ready:       true,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: start, FinishedAt: now,
				ContainerID: fakeContainerID(pod, c.Name),
			}},
		})
	}
	for i, c := range pod.Spec.Containers {
		var restartCount int32
		if i == 0 {
			restartCount = restarts
		}
		status.ContainerStatuses = append(status.ContainerStatuses, corev1.ContainerStatus{
			Name:         c.Name,
			Image:        c.Image,
			ImageID:      fakeImageID(c.Image),
			ContainerID:  fakeContainerID(pod, c.Name),
			Ready:        ready,
			RestartCount: restartCount,
			Started:      ptr.To(true),
			State:        corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: start}},
		})
	}
	return status, nil
}

func fakeImageID(image string) string { return "testenv://image/" + image }

func fakeContainerID(pod *corev1.Pod, container string) string {
	return "testenv://" + string(pod.UID) + "/" + container
}

// ipam hands out pod IPs from a CIDR in order, never giving one address to
// two live pods. It skips the network address and the first host address
// (often a gateway in real clusters) and wraps around at the end.
type ipam struct {
	mu    sync.Mutex
	cidr  *net.IPNet
	base  *big.Int
	size  *big.Int
	next  *big.Int
	inUse map[string]types.UID
	byUID map[types.UID]string
}

func newIPAM(cidr string) (*ipam, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, fmt.Errorf("pod CIDR %q: %w", cidr, err)
	}
	ones, bits := n.Mask.Size()
	if bits-ones < 2 {
		return nil, fmt.Errorf("pod CIDR %s is too small", cidr)
	}
	return &ipam{
		cidr:  n,
		base:  new(big.Int).SetBytes(n.IP),
		size:  new(big.Int).Lsh(big.NewInt(1), uint(bits-ones)),
		next:  big.NewInt(2),
		inUse: map[string]types.UID{},
		byUID: map[types.UID]string{},
	}, nil
}

func (a *ipam) ipAt(offset *big.Int) string {
	v := new(big.Int).Add(a.base, offset).Bytes()
	ip := make(net.IP, len(a.cidr.IP))
	copy(ip[len(ip)-len(v):], v)
	return ip.String()
}

func (a *ipam) use(uid types.UID, ip string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inUse[ip] = uid
	a.byUID[uid] = ip
	parsed := net.ParseIP(ip)
	if !a.cidr.Contains(parsed) {
		return
	}
	if v4 := parsed.To4(); v4 != nil && len(a.cidr.IP) == net.IPv4len {
		parsed = v4
	}
	offset := new(big.Int).Sub(new(big.Int).SetBytes(parsed), a.base)
	offset.Add(offset, big.NewInt(1))
	if offset.Cmp(a.next) > 0 && offset.Cmp(a.size) < 0 {
		a.next = offset
	}
}

func (a *ipam) allocate(uid types.UID) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ip, ok := a.byUID[uid]; ok {
		return ip, nil
	}
	last := new(big.Int).Sub(a.size, big.NewInt(1)) // broadcast address stays free
	for tries := new(big.Int).Set(a.size); tries.Sign() > 0; tries.Sub(tries, big.NewInt(1)) {
		if a.next.Cmp(last) >= 0 {
			a.next.SetInt64(2)
		}
		ip := a.ipAt(a.next)
		a.next.Add(a.next, big.NewInt(1))
		if _, taken := a.inUse[ip]; !taken {
			a.inUse[ip] = uid
			a.byUID[uid] = ip
			return ip, nil
		}
	}
	return "", fmt.Errorf("pod CIDR %s is exhausted", a.cidr)
}

func (a *ipam) release(uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ip, ok := a.byUID[uid]; ok {
		delete(a.byUID, uid)
		delete(a.inUse, ip)
	}
}

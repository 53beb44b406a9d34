package podrunner

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// readFile returns the content container c of pod p would find at path: a
// key of the Secret or ConfigMap volume mounted over it (with the volume's
// items mapping paths to keys). Other volume kinds are not supported.
func (r *Runner) readFile(ctx context.Context, p *corev1.Pod, c corev1.Container, path string) ([]byte, error) {
	for _, m := range c.VolumeMounts {
		dir := strings.TrimSuffix(m.MountPath, "/") + "/"
		if !strings.HasPrefix(path, dir) {
			continue
		}
		rel := strings.TrimPrefix(path, dir)
		if m.SubPath != "" {
			continue
		}
		for _, v := range p.Spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			switch {
			case v.Secret != nil:
				s, err := r.client.CoreV1().Secrets(p.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
				if err != nil {
					return nil, fmt.Errorf("%s: secret %s: %w", path, v.Secret.SecretName, err)
				}
				key := itemKey(v.Secret.Items, rel)
				if b, ok := s.Data[key]; ok {
					return b, nil
				}
				return nil, fmt.Errorf("%s: secret %s has no key %q", path, v.Secret.SecretName, key)
			case v.ConfigMap != nil:
				cm, err := r.client.CoreV1().ConfigMaps(p.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
				if err != nil {
					return nil, fmt.Errorf("%s: config map %s: %w", path, v.ConfigMap.Name, err)
				}
				key := itemKey(v.ConfigMap.Items, rel)
				if d, ok := cm.Data[key]; ok {
					return []byte(d), nil
				}
				if b, ok := cm.BinaryData[key]; ok {
					return b, nil
				}
				return nil, fmt.Errorf("%s: config map %s has no key %q", path, v.ConfigMap.Name, key)
			}
			return nil, fmt.Errorf("%s: volume %s is neither a secret nor a config map", path, v.Name)
		}
	}
	return nil, fmt.Errorf("%s: no secret or config map volume of container %s holds it", path, c.Name)
}

// itemKey is the key that items map to path rel ("" if none), or rel
// itself without items.
func itemKey(items []corev1.KeyToPath, rel string) string {
	if len(items) == 0 {
		return rel
	}
	for _, it := range items {
		if it.Path == rel {
			return it.Key
		}
	}
	return ""
}
